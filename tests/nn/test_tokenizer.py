import numpy as np
import pytest
import torch

from kronos_sk.checkpoints import load_tokenizer
from kronos_sk.nn.config import TokenizerConfig
from kronos_sk.nn.tokenizer import BSQuantizer, KronosTokenizer, bits_to_ids, ids_to_bits


@pytest.fixture(scope="module")
def reference(compat_dir):
    return load_tokenizer(compat_dir / "tokenizer"), np.load(compat_dir / "intermediates.npz")


def test_ids_are_least_significant_bit_first():
    bits = torch.tensor([[1.0, -1.0, -1.0], [-1.0, 1.0, 1.0], [-1.0, -1.0, -1.0]])
    assert bits_to_ids(bits).tolist() == [1, 6, 0]
    ids = torch.arange(16)
    assert torch.equal(bits_to_ids(ids_to_bits(ids, 4)), ids)


def test_quantizer_maps_zero_to_minus_one_and_scales():
    bsq = BSQuantizer(4, 2, 0.05, 1.0, 1.1, 0.05)
    z, zq = bsq.quantize(torch.tensor([[0.0, 3.0, -4.0, 0.0]]))
    torch.testing.assert_close(z, torch.tensor([[0.0, 0.6, -0.8, 0.0]]))
    torch.testing.assert_close(zq, torch.tensor([[-0.5, 0.5, -0.5, -0.5]]))


def test_quantizer_passes_gradients_straight_through():
    bsq = BSQuantizer(4, 2, 0.05, 1.0, 1.1, 0.05)
    z = torch.randn(3, 4, requires_grad=True)
    _, zq = bsq.quantize(z)
    zq.sum().backward()
    assert z.grad is not None and z.grad.abs().sum() > 0


def test_quantizer_entropies_match_hand_computation():
    bsq = BSQuantizer(2, 2, beta=0.0, gamma0=1.0, gamma=1.0, zeta=1.0, inv_temperature=1.0)
    z = torch.tensor([[0.6, 0.8], [-0.6, 0.8]])
    _, zq = bsq.quantize(z)
    losses = bsq.losses(z, zq)
    codes = torch.tensor([[-1.0, -1.0], [1.0, -1.0], [-1.0, 1.0], [1.0, 1.0]]) / 2 ** 0.5
    probs = torch.softmax(2 * z @ codes.T, -1)
    sample_entropy = -(probs * probs.log()).sum(-1).mean()
    mean = probs.mean(0)
    codebook_entropy = -(mean * mean.log()).sum()
    torch.testing.assert_close(losses.sample_entropy, sample_entropy)
    torch.testing.assert_close(losses.codebook_entropy, codebook_entropy)
    torch.testing.assert_close(losses.total, sample_entropy - codebook_entropy)
    commitment = ((zq - z) ** 2).sum(-1).mean()
    torch.testing.assert_close(losses.commitment, commitment)


def test_encode_decode_match_reference(reference):
    tokenizer, ref = reference
    x = torch.from_numpy(ref["normalized_input"])
    s1, s2 = tokenizer.encode(x)
    np.testing.assert_array_equal(s1.numpy(), ref["s1_ids"])
    np.testing.assert_array_equal(s2.numpy(), ref["s2_ids"])
    np.testing.assert_allclose(tokenizer.decode(s1, s2).numpy(), ref["decoded"], rtol=1e-4,
                               atol=1e-6)


def test_training_forward_matches_reference(reference):
    tokenizer, ref = reference
    out = tokenizer(torch.from_numpy(ref["normalized_input"]))
    np.testing.assert_allclose(out.recon_coarse.detach().numpy(), ref["recon_coarse"],
                               rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(out.recon_full.detach().numpy(), ref["recon_full"], rtol=1e-4,
                               atol=1e-6)


def test_block_count_is_one_fewer_than_config():
    tokenizer = KronosTokenizer(TokenizerConfig(d_model=16, n_heads=2, ff_dim=32,
                                                n_enc_layers=3, n_dec_layers=1, s1_bits=2,
                                                s2_bits=2, group_size=2))
    assert len(tokenizer.encoder) == 2 and len(tokenizer.decoder) == 0
    s1, s2 = tokenizer.encode(torch.randn(2, 5, 6))
    assert tokenizer.decode(s1, s2).shape == (2, 5, 6)
