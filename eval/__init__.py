"""codec.eval: bitrate and perceptual-quality measurement for any codec."""
