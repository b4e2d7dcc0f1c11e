"""The model's parts: streaming state (`stream_state`), the encoder, decoder and synthesis networks
(`networks`), the pitch estimate and its code slots (`pitch`), the residual VQ (`quantizer`) and the
computed phases (`phase`). `codec.model.Codec` assembles them."""
