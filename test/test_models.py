"""Model structure: shapes, parameter counts, causality, LMU forms, CKConv fixes and its kernel cache."""
import math

import pytest
import torch

from ser_models import build
from ser_models.ckconv import CKConv, SineLinear
from ser_models.registry import count_parameters
from ser_models.timnet import CausalConv1d

FRAMES = 121


def make(name, **settings):
    torch.manual_seed(0)
    return build(dict(name=name, n_classes=7, n_mfcc=39, frames=FRAMES, **settings))


@pytest.mark.parametrize('name,settings', [
    ('timnet', {}), ('cktim', {}), ('cktim', {'generator': 'convKan'}), ('cktim', {'ck_input': False}),
    ('cktim', {'kernel_mask': True}), ('lmu', {}),
])
def test_output_shape_and_finite(name, settings):
    model = make(name, **settings).eval()
    with torch.no_grad():
        logits = model(torch.randn(3, 39, FRAMES))
    assert logits.shape == (3, 7) and torch.isfinite(logits).all()


def test_timnet_parameter_count_matches_reference():
    # 8 TABs, 39 filters, 7 classes: the published PyTorch port's count.
    assert count_parameters(make('timnet')) == 104_496


@pytest.mark.parametrize('n_tab', [1, 3, 6, 10])
def test_tab_count_is_configurable(n_tab):
    model = make('timnet', n_tab=n_tab)
    assert len(model.forward_tabs) == len(model.backward_tabs) == n_tab
    with pytest.raises(ValueError, match='n_tab'):
        make('timnet', n_tab=11)


def test_unknown_model_and_setting_are_rejected():
    with pytest.raises(ValueError, match='unknown model'):
        make('resnet')
    with pytest.raises(ValueError, match='unknown settings'):
        make('timnet', omega=3)


@pytest.mark.parametrize('layer', [
    lambda: CausalConv1d(4, 5, kernel_size=2, dilation=4),
    lambda: CKConv(4, 5, omega_0=25.0),
    lambda: CKConv(4, 5, generator='convKan'),
    lambda: CKConv(4, 5, mask_width=0.1),
])
def test_causal_layers_never_look_ahead(layer):
    torch.manual_seed(1)
    module = layer().eval()
    x = torch.randn(2, 4, 40)
    changed = x.clone()
    changed[..., 25:] = torch.randn(2, 4, 15) * 10
    with torch.no_grad():
        before, after = module(x), module(changed)
    torch.testing.assert_close(before[..., :25], after[..., :25], atol=1e-5, rtol=1e-5)
    assert not torch.allclose(before[..., 25:], after[..., 25:])


def test_ckconv_equals_direct_causal_convolution_with_its_kernel():
    torch.manual_seed(2)
    conv = CKConv(3, 2).eval()
    x = torch.randn(1, 3, 17)
    kernel = conv.kernel(17)                                   # (O, I, L), tap L-1 = lag 0
    direct = torch.nn.functional.conv1d(torch.nn.functional.pad(x, (16, 0)), kernel) + conv.bias[:, None]
    with torch.no_grad():
        torch.testing.assert_close(conv(x), direct, atol=1e-5, rtol=1e-4)
        conv.use_dft_matmul = True
        torch.testing.assert_close(conv(x), direct, atol=1e-5, rtol=1e-4)


def test_kernel_mask_starts_local_keeps_the_fan_in_scale_and_learns_its_width():
    torch.manual_seed(3)
    masked, plain = CKConv(4, 5, mask_width=2.0 ** -5), CKConv(4, 5)
    plain.generator.load_state_dict(masked.generator.state_dict())
    with torch.no_grad():
        kernel, full = masked.kernel(FRAMES), plain.kernel(FRAMES)
    energy = kernel.square().sum(dim=(0, 1))                      # by tap; tap L-1 is lag 0
    assert energy[:-20].sum() < 1e-6 * energy[-20:].sum()         # nothing beyond about 5 widths
    assert kernel.square().sum() == pytest.approx(full.square().sum().item(), rel=0.5)
    masked(torch.randn(2, 4, FRAMES)).square().mean().backward()
    assert masked.mask_log_width.grad is not None and masked.mask_log_width.grad != 0
    with pytest.raises(ValueError, match='mask_width'):
        CKConv(4, 5, mask_width=0.0)


def test_kernel_mask_widths_grow_with_the_tab_level():
    model = make('cktim', n_tab=3, kernel_mask=True)
    widths = [tab.body[0].mask_log_width.exp().item() for tab in model.forward_tabs]
    assert widths == pytest.approx([2.0 ** -5, 2.0 ** -4, 2.0 ** -3])
    assert model.forward_input.mask_log_width.exp().item() == pytest.approx(2.0 ** -6)
    assert make('cktim', n_tab=3).forward_input.mask_log_width is None


def test_siren_init_survives_weight_norm():
    torch.manual_seed(3)
    omega = 25.0
    hidden = SineLinear(32, 32, omega, first=False, weight_norm=True)
    first = SineLinear(1, 32, omega, first=True, weight_norm=True)
    bound_hidden = math.sqrt(6 / 32) / omega
    assert hidden.linear.weight.abs().max() <= bound_hidden + 1e-7
    assert first.linear.weight.abs().max() <= 1.0 + 1e-7
    # Spread as uniform on the SIREN bound, not Kaiming's much larger 1/sqrt(fan_in).
    assert hidden.linear.weight.abs().max() > 0.8 * bound_hidden
    assert hidden.linear.weight.abs().max() < 1 / math.sqrt(32) / 2


def test_bias_is_a_trainable_parameter_and_follows_the_module():
    conv = CKConv(3, 2)
    names = dict(conv.named_parameters())
    assert names['bias'] is conv.bias and conv.bias.requires_grad
    moved = conv.to(torch.float64)
    assert moved.bias.dtype == torch.float64 and 'bias' in dict(moved.named_parameters())
    conv.float()
    conv(torch.randn(1, 3, 9)).sum().backward()
    assert conv.bias.grad is not None


def test_omega_0_reaches_the_input_ckconvs():
    model = make('cktim', omega_0=30.0)
    omegas = {layer.omega_0 for layer in model.modules() if isinstance(layer, SineLinear)}
    assert omegas == {30.0}
    assert model.forward_input.omega_0 == model.backward_input.omega_0 == 30.0


def test_kernel_cache_hits_in_eval_and_is_invalidated_by_training_and_weight_changes():
    torch.manual_seed(4)
    conv = CKConv(3, 3).eval()
    x = torch.randn(1, 3, 20)
    with torch.no_grad():
        first = conv.kernel_spectrum(20)
        assert conv.kernel_spectrum(20) is first                 # cached
        assert conv.kernel_spectrum(21) is not first             # per input length
        second = conv.kernel_spectrum(20)
    conv.train()
    assert conv._cache is None                                   # train() drops it
    optimizer = torch.optim.SGD(conv.parameters(), lr=0.1)
    conv(x).pow(2).sum().backward()
    optimizer.step()
    conv.eval()
    with torch.no_grad():
        after_step = conv.kernel_spectrum(20)
    assert not torch.allclose(after_step, second)
    state = {k: v.clone() for k, v in CKConv(3, 3).state_dict().items()}
    conv.load_state_dict(state)                                  # a weight change in eval mode
    with torch.no_grad():
        assert not torch.allclose(conv.kernel_spectrum(20), after_step)


def test_lmu_parallel_form_equals_recurrent_form():
    model = make('lmu', order=32, layers=2).eval()
    x = torch.randn(2, 39, FRAMES)
    with torch.no_grad():
        torch.testing.assert_close(model(x), model.forward_recurrent(x), atol=1e-4, rtol=1e-4)


def test_training_is_deterministic_under_a_seed():
    def one_step():
        model = make('cktim', n_tab=2)
        model.train()
        torch.manual_seed(5)
        x, y = torch.randn(4, 39, FRAMES), torch.tensor([0, 1, 2, 3])
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
        loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        optimizer.step()
        return loss.item(), model.classifier.weight.detach().clone()
    loss_a, weight_a = one_step()
    loss_b, weight_b = one_step()
    assert loss_a == loss_b and torch.equal(weight_a, weight_b)
