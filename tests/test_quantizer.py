"""The residual VQ must code residuals: each added stage lowers the error on a known signal."""
import functools

import torch

from codec.nn.quantizer import ResidualVQ

DIM, RANK = 64, 16


def _signal(gen: torch.Generator, mix: torch.Tensor, items: int = 16, frames: int = 32) -> torch.Tensor:
    z = torch.randn(items, frames, RANK, generator=gen)  # a low-rank Gaussian latent, (B, D, F)
    return (z @ mix).transpose(1, 2)


@functools.lru_cache
def _relative_errors(residual_weight: float, steps: int = 100) -> tuple[float, ...]:
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    mix = torch.randn(RANK, DIM, generator=gen) / RANK ** 0.5
    vq = ResidualVQ(DIM, n_codebooks=8, codebook_size=64, codebook_dim=4, dropout_prob=0.5, reseed_every=50)
    opt = torch.optim.Adam(vq.parameters(), lr=3e-3)
    for _ in range(steps):
        q = vq(_signal(gen, mix))
        loss = 0.25 * q.commitment_loss + q.codebook_loss + residual_weight * q.residual_loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    vq.eval()
    x = _signal(gen, mix, items=32)
    with torch.no_grad():
        return tuple(float((x - vq.decode(vq.encode(x, n))).norm() / x.norm()) for n in (1, 2, 4, 8))


def test_each_stage_lowers_the_error_when_stages_fit_their_residuals():
    errors = _relative_errors(residual_weight=1.0)
    assert all(b < a for a, b in zip(errors, errors[1:])), errors
    assert errors[-1] < 0.6 * errors[0], errors


def test_without_the_residual_fit_later_stages_do_not_help():
    # Without the fit, 37 stages code no better than one.
    fitted, unfitted = _relative_errors(1.0), _relative_errors(0.0)
    assert unfitted[-1] > fitted[-1] + 0.3, (fitted, unfitted)


def test_stages_start_as_orthogonal_projections():
    vq = ResidualVQ(DIM, n_codebooks=3, codebook_size=16, codebook_dim=4)
    for i in range(3):
        p = vq.out_weight[i] @ vq.in_weight[i]  # (D, D)
        torch.testing.assert_close(p @ p, p, atol=1e-5, rtol=0)  # idempotent
        torch.testing.assert_close(p, p.T, atol=1e-6, rtol=0)  # and symmetric: an orthogonal projection
        assert abs(float(torch.trace(p.detach())) - 4) < 1e-4  # of rank codebook_dim


def test_picked_entries_follow_their_centroids():
    torch.manual_seed(1)
    vq = ResidualVQ(DIM, n_codebooks=1, codebook_size=8, codebook_dim=4, dropout_prob=0.0, codebook_rate=0.5)
    x = torch.randn(2, DIM, 10)
    before = vq.codebooks.detach().clone()
    codes = vq(x).codes[:, 0].flatten()
    z_e = x.transpose(1, 2).reshape(-1, DIM) @ vq.in_weight[0].T + vq.in_bias[0]
    for k in range(8):
        picked = codes == k
        expected = before[0, k] if not picked.any() else 0.5 * before[0, k] + 0.5 * z_e[picked].mean(0)
        torch.testing.assert_close(vq.codebooks[0, k].detach(), expected.detach(), atol=1e-5, rtol=1e-5)


def test_without_decoder_grad_the_stages_learn_only_from_their_own_losses():
    from codec.nn.quantizer import ResidualVQ

    torch.manual_seed(0)
    for decoder_grad in (True, False):
        vq = ResidualVQ(16, 4, 32, 4, dropout_prob=0.0, decoder_grad=decoder_grad).train()
        latent = torch.randn(2, 16, 5, requires_grad=True)
        q = vq(latent)
        q.quantized.pow(2).sum().backward()  # a stand-in for the decoder's loss
        stage_grads = [p.grad for p in (vq.in_weight, vq.out_weight, vq.out_bias)]
        assert torch.allclose(latent.grad, 2 * q.quantized.detach())  # straight through to the encoder either way
        if decoder_grad:
            assert all(g is not None and g.abs().sum() > 0 for g in stage_grads)
        else:
            assert all(g is None or g.abs().sum() == 0 for g in stage_grads)


def test_the_training_path_picks_the_codes_encoding_picks_even_under_bf16_autocast():
    """bf16 scores cannot tell apart a deep stage's nearest entries: the training path scores in float32."""
    gen = torch.Generator().manual_seed(1)
    vq = ResidualVQ(DIM, n_codebooks=16, codebook_size=256, codebook_dim=8).eval()
    x = _signal(gen, torch.randn(RANK, DIM, generator=gen) / RANK ** 0.5) * 100  # latents are large
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        trained = vq(x).codes
    assert torch.equal(trained, vq.encode(x))


def test_reseeding_counts_the_entries_it_replaced_not_those_the_centroids_moved():
    torch.manual_seed(2)
    vq = ResidualVQ(DIM, n_codebooks=2, codebook_size=32, codebook_dim=4, dropout_prob=0.0, reseed_every=1,
                    codebook_rate=0.5)
    with torch.no_grad():
        vq.usage.fill_(1.0)
        vq.usage[0, :3] = 0.0  # three entries of the first stage, and five of the second, fall under the threshold
        vq.usage[1, 10:15] = 0.0
    before = vq.codebooks.detach().clone()
    vq(torch.randn(2, DIM, 40))
    moved = int((vq.codebooks.detach() != before).any(dim=-1).sum())
    assert vq.reseeded == 8 < moved  # the picked entries moved towards their centroids as well
    vq(torch.randn(2, DIM, 40))  # usage decays by 1 % a call: no entry is under the threshold yet
    assert vq.reseeded == 0


def test_a_call_that_does_not_reseed_reports_none():
    torch.manual_seed(3)
    vq = ResidualVQ(DIM, n_codebooks=1, codebook_size=16, codebook_dim=4, reseed_every=2, reseed_threshold=2.0)
    counts = []
    for _ in range(4):
        vq(torch.randn(2, DIM, 20))
        counts.append(vq.reseeded)
    assert counts == [None, 16, None, 16]  # every entry is under a threshold of twice a uniform share
