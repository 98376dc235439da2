"""The study's networks: shapes, sizes against hand counts and published numbers, Caffe pooling
and LRN arithmetic, initialisation, lr/decay multipliers, BN statistics, stochastic depth."""

import math

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from lrstudy.models import (
    MODELS,
    CaffeBatchNorm2d,
    CaffeCifar10Full,
    CaffeCifar10SigmoidBN,
    CaffeLeNet,
    DenseNet,
    StochasticDepthResNet,
    WideResNet,
    WithinChannelLRN,
    build_model,
    count_parameters,
    resnet,
)


def test_parameter_count_and_output_shape():
    model = CaffeCifar10Full()
    # conv1 3*32*25+32, conv2 32*32*25+32, conv3 32*64*25+64, ip1 64*4*4*10+10
    assert count_parameters(model) == 2432 + 25632 + 51264 + 10250 == 89578
    assert model(torch.randn(7, 3, 32, 32)).shape == (7, 10)
    assert build_model({"name": "caffe_cifar10_full"}, num_classes=100)(torch.randn(2, 3, 32, 32)).shape == (2, 100)


def test_caffe_ceil_mode_pooling_sizes():
    model = CaffeCifar10Full()
    sizes = []
    for layer in ("conv1", "conv2", "conv3"):
        getattr(model, layer).register_forward_hook(lambda m, i, o: sizes.append(o.shape[-1]))
    model(torch.randn(1, 3, 32, 32))
    assert sizes == [32, 16, 8]  # each conv sees the pooled output of the previous stage: 32 -> 16 -> 8 -> 4
    assert model.ip1.in_features == 64 * 4 * 4


def test_average_pool_divides_like_caffe_at_the_border():
    """Caffe's AVE pooling (pad 0, ceil mode) divides a window clipped by the image edge by the
    number of in-image pixels; PyTorch's ceil-mode avg_pool2d must do the same."""
    x = torch.arange(16 * 16, dtype=torch.float64).reshape(1, 1, 16, 16)
    out = F.avg_pool2d(x, 3, 2, ceil_mode=True)
    assert out.shape[-1] == 8
    # last window starts at 14 and covers rows/cols 14..15 only
    assert out[0, 0, 7, 7].item() == pytest.approx(x[0, 0, 14:16, 14:16].mean().item())
    assert out[0, 0, 0, 0].item() == pytest.approx(x[0, 0, 0:3, 0:3].mean().item())


def test_within_channel_lrn_formula():
    x = torch.randn(2, 4, 6, 6, dtype=torch.float64) * 50
    y = WithinChannelLRN(size=3, alpha=5e-5, beta=0.75)(x)
    padded = F.pad(x * x, (1, 1, 1, 1))
    i, j = 0, 5  # a border pixel: its 3x3 window includes zero padding, still divided by 9
    window = padded[1, 2, i:i + 3, j:j + 3]
    expected = x[1, 2, i, j] * (1 + 5e-5 * window.sum() / 9) ** -0.75
    assert y[1, 2, i, j].item() == pytest.approx(expected.item(), rel=1e-12)


def test_gaussian_initialisation_and_multipliers():
    torch.manual_seed(0)
    model = CaffeCifar10Full()
    assert model.conv1.weight.std().item() == pytest.approx(1e-4, rel=0.1)
    assert model.conv2.weight.std().item() == pytest.approx(1e-2, rel=0.05)
    assert all(layer.bias.abs().sum() == 0 for layer in (model.conv1, model.conv2, model.conv3, model.ip1))
    assert set(model.param_multipliers) == {n for n, _ in model.named_parameters()}
    assert model.param_multipliers["ip1.weight"] == (1.0, 250.0)
    assert model.param_multipliers["ip1.bias"] == (2.0, 0.0)


def test_unknown_model():
    with pytest.raises(ValueError, match="unknown model 'resnet9'"):
        build_model({"name": "resnet9"}, num_classes=10)



# ----------------------------------------------------------------------------------------------
# Every model: output shape, a channels_last forward + backward, multipliers covering the parameters
# ----------------------------------------------------------------------------------------------

# Small members of each family keep this file fast on CPU; the full-size nets are built on the meta
# device further down (same code, no memory, no arithmetic).
SMALL_SPECS = {
    "caffe_cifar10_full": ({"name": "caffe_cifar10_full"}, 3, 32),
    "caffe_cifar10_sigmoid_bn": ({"name": "caffe_cifar10_sigmoid_bn"}, 3, 32),
    "lenet": ({"name": "lenet"}, 1, 28),
    "resnet20_option_a": ({"name": "resnet", "depth": 20, "variant": "option_a"}, 3, 32),
    "resnet20_caffe_sc": ({"name": "resnet", "depth": 20, "variant": "caffe_sc", "bn_momentum": 0.05}, 3, 32),
    # p_last = 1 drops nothing, so every parameter must get a gradient
    "resnet20_sd": ({"name": "resnet_sd", "depth": 20, "p_last": 1.0}, 3, 32),
    "wrn_16_2": ({"name": "wrn", "depth": 16, "width": 2}, 3, 32),
    "densenet_bc_16": ({"name": "densenet", "depth": 16}, 3, 32),
    "densenet_13": ({"name": "densenet", "depth": 13, "bottleneck": False, "compression": 1}, 3, 32),
}

FULL_SPECS = [
    {"name": "caffe_cifar10_full"},
    {"name": "caffe_cifar10_sigmoid_bn"},
    {"name": "lenet"},
    *({"name": "resnet", "depth": d, "variant": "option_a"} for d in (20, 32, 44, 56, 110)),
    *({"name": "resnet", "depth": d, "variant": "caffe_sc"} for d in (20, 56, 110)),
    {"name": "resnet_sd"},
    {"name": "wrn"},
    {"name": "densenet"},
    {"name": "densenet", "depth": 40, "bottleneck": False, "compression": 1},
]


def on_meta(spec: dict, num_classes: int = 10) -> nn.Module:
    """The model with parameters on the meta device: shapes only, built in no time."""
    with torch.device("meta"):
        return build_model(spec, num_classes)


@pytest.mark.parametrize("spec, channels, side", SMALL_SPECS.values(), ids=SMALL_SPECS.keys())
def test_forward_and_backward_in_channels_last(spec, channels, side):
    torch.manual_seed(0)
    model = build_model(spec, num_classes=100).to(memory_format=torch.channels_last)
    x = torch.randn(2, channels, side, side).to(memory_format=torch.channels_last)
    out = model(x)
    assert out.shape == (2, 100) and torch.isfinite(out).all()
    out.logsumexp(1).sum().backward()
    for name, param in model.named_parameters():
        assert param.grad is not None and torch.isfinite(param.grad).all(), name
    model.eval()
    assert model(x).shape == (2, 100)


@pytest.mark.parametrize("spec", FULL_SPECS, ids=lambda spec: "-".join(str(v) for v in spec.values()))
def test_param_multipliers_cover_exactly_the_parameters(spec):
    model = on_meta(spec)
    assert set(model.param_multipliers) == {name for name, _ in model.named_parameters()}
    assert all(
        isinstance(lr, float) and isinstance(decay, float) for lr, decay in model.param_multipliers.values()
    )


def test_every_registered_model_is_covered_and_takes_num_classes():
    assert {spec["name"] for spec in FULL_SPECS} == set(MODELS)
    for spec in FULL_SPECS:
        classifier = [m for m in on_meta(spec, num_classes=7).modules() if isinstance(m, nn.Linear)][-1]
        assert classifier.out_features == 7, spec


# ----------------------------------------------------------------------------------------------
# Sizes: exact hand counts for the Caffe nets, published numbers for the others
# ----------------------------------------------------------------------------------------------


def test_caffe_nets_parameter_counts_by_hand():
    # sigmoid + BN: bias-free convs 3*32*25, 32*32*25, 32*64*25; BN has no learnable blobs; ip1 1024*10+10
    assert count_parameters(CaffeCifar10SigmoidBN()) == 2400 + 25600 + 51200 + 10250 == 89450
    # LeNet: conv1 1*20*25+20, conv2 20*50*25+50, ip1 (50*4*4)*500+500, ip2 500*10+10
    assert count_parameters(CaffeLeNet()) == 520 + 25050 + 400500 + 5010 == 431080
    # Caffe ResNet-56: every conv has a bias and is followed by BN + Scale (2 parameters per channel).
    # stem 3*16*9+16 + 32 = 480; stage 1: 18 convs of (16*16*9+16 + 32) = 18*2352 = 42336;
    # stages 2 and 3: the downsampling block's 2 convs keep the input width, the other 16 double it.
    stage2 = 2 * (16 * 16 * 9 + 16 + 32) + 16 * (32 * 32 * 9 + 32 + 64)  # 4704 + 148992
    stage3 = 2 * (32 * 32 * 9 + 32 + 64) + 16 * (64 * 64 * 9 + 64 + 128)  # 18624 + 592896
    total = 480 + 42336 + stage2 + stage3 + (64 * 10 + 10)
    caffe_56 = on_meta({"name": "resnet", "depth": 56, "variant": "caffe_sc"})
    assert count_parameters(caffe_56) == total == 808682
    # He et al.'s ResNet-20 (option A, bias-free convs): stem 432+32; stage 1: 6*(2304+32);
    # stage 2: (4608+64) + 5*(9216+64); stage 3: (18432+128) + 5*(36864+128); fc 650
    assert count_parameters(resnet(depth=20)) == 464 + 14016 + 51072 + 203520 + 650 == 269722
    # Stochastic depth's ResNet-110 is ResNet-110 plus a bias on each of its 109 convs
    biases = 16 + 18 * 2 * 16 + 18 * 2 * 32 + 18 * 2 * 64
    resnet_110 = on_meta({"name": "resnet", "depth": 110})
    assert count_parameters(on_meta({"name": "resnet_sd"})) == count_parameters(resnet_110) + biases


# Published sizes are rounded; we require ours to round to them. Exact counts: ResNet-20/56/110
# 269,722 / 853,018 / 1,727,962; WRN-28-10 / 16-8 / 16-4 / 28-20 36,483,674 / 10,963,162 /
# 2,749,786 / 145,824,474; DenseNet-BC-100 769,162; DenseNet-40 1,019,722. All are within 1% of
# the published figure except ResNet-110 (1.6% above "1.7M") and DenseNet-BC-100 (3.9% below
# "0.8M"), which still round to it.
PUBLISHED_SIZES = [
    ({"name": "resnet", "depth": 20}, "0.27"),  # He et al. 2016, Table 6
    ({"name": "resnet", "depth": 56}, "0.85"),
    ({"name": "resnet", "depth": 110}, "1.7"),
    ({"name": "wrn", "depth": 28, "width": 10}, "36.5"),  # Zagoruyko & Komodakis; SGDR Table 1
    ({"name": "wrn", "depth": 16, "width": 8}, "11.0"),
    ({"name": "wrn", "depth": 16, "width": 4}, "2.75"),
    ({"name": "wrn", "depth": 28, "width": 20}, "145.8"),
    ({"name": "densenet", "depth": 100, "growth": 12}, "0.8"),  # Huang et al., Table 2 (DenseNet-BC)
    ({"name": "densenet", "depth": 40, "growth": 12, "bottleneck": False, "compression": 1}, "1.0"),
]


@pytest.mark.parametrize("spec, published_millions", PUBLISHED_SIZES, ids=lambda v: str(v))
def test_parameter_counts_match_the_published_sizes(spec, published_millions):
    count = count_parameters(on_meta(spec))
    decimals = len(published_millions.split(".")[1])
    assert f"{count / 1e6:.{decimals}f}" == published_millions
    assert abs(count / (float(published_millions) * 1e6) - 1) < 0.04


def test_plain_densenet_starts_with_16_channels_as_the_paper_says():
    plain = {"name": "densenet", "depth": 40, "bottleneck": False, "compression": 1}
    assert on_meta(plain).conv.out_channels == 16
    assert on_meta({"name": "densenet"}).conv.out_channels == 24  # 2k for DenseNet-BC
    # The Torch code's 2k for every variant would give 1.06M, which does not round to the paper's 1.0M.
    assert count_parameters(on_meta({**plain, "initial_channels": 24})) == 1059298
    # Channels reaching the classifier: 16 + 3*12*12 = 448 (no compression); BC-100: 342
    assert on_meta(plain).fc.in_features == 448 and on_meta({"name": "densenet"}).fc.in_features == 342


# ----------------------------------------------------------------------------------------------
# Caffe nets: pooling arithmetic, layer order, multipliers, initialisation
# ----------------------------------------------------------------------------------------------


def test_caffe_small_nets_pooled_sizes():
    assert CaffeCifar10SigmoidBN().ip1.in_features == 64 * 4 * 4
    assert CaffeLeNet().ip1.in_features == 50 * 4 * 4  # 28 -> 24 -> 12 -> 8 -> 4


def test_caffe_multipliers_follow_the_prototxts():
    assert CaffeCifar10SigmoidBN().param_multipliers == {
        "conv1.weight": (1.0, 1.0), "conv2.weight": (1.0, 1.0), "conv3.weight": (1.0, 1.0),
        "ip1.weight": (1.0, 1.0), "ip1.bias": (1.0, 0.0),
    }  # fmt: skip
    lenet = CaffeLeNet().param_multipliers
    assert lenet["conv1.bias"] == (2.0, 1.0) and lenet["ip1.weight"] == (1.0, 1.0)
    sc = resnet(depth=20, variant="caffe_sc").param_multipliers
    assert sc["conv.weight"] == sc["blocks.3.conv1.weight"] == (1.0, 1.0)
    assert sc["conv.bias"] == sc["blocks.3.conv1.bias"] == (2.0, 0.0)
    assert sc["bn.weight"] == sc["blocks.8.bn2.bias"] == (1.0, 1.0)  # Scale layers: Caffe defaults
    assert sc["fc.weight"] == (1.0, 1.0) and sc["fc.bias"] == (2.0, 1.0)


def test_torch_and_lasagne_models_decay_what_their_code_decayed():
    for spec in ({"name": "resnet", "depth": 20}, {"name": "resnet_sd"}, {"name": "densenet"}):
        assert set(on_meta(spec).param_multipliers.values()) == {(1.0, 1.0)}  # Torch optim.sgd: everything
    wrn = on_meta({"name": "wrn", "depth": 16, "width": 2})
    for name, (lr_mult, decay_mult) in wrn.param_multipliers.items():
        assert lr_mult == 1.0
        assert decay_mult == (1.0 if name.endswith("weight") and "bn" not in name else 0.0), name
    assert wrn.param_multipliers["blocks.0.projection.weight"] == (1.0, 1.0)
    assert wrn.param_multipliers["blocks.0.conv2.bias"] == (1.0, 0.0)
    assert wrn.param_multipliers["bn_final.weight"] == wrn.param_multipliers["fc.bias"] == (1.0, 0.0)


def test_caffe_initialisations():
    torch.manual_seed(0)
    lenet = CaffeLeNet()  # xavier (FAN_IN): uniform on +-sqrt(3 / fan_in)
    for layer, fan_in in ((lenet.conv2, 20 * 25), (lenet.ip1, 800)):
        bound = math.sqrt(3 / fan_in)
        assert layer.weight.abs().max().item() <= bound and layer.weight.abs().max().item() > 0.95 * bound
    sc = resnet(depth=20, variant="caffe_sc")  # msra: N(0, 2 / fan_in)
    assert sc.blocks[8].conv2.weight.std().item() == pytest.approx(math.sqrt(2 / (64 * 9)), rel=0.03)
    assert sc.blocks[3].conv1.bias.abs().sum() == 0 and sc.fc.weight.abs().max().item() <= math.sqrt(3 / 64)


# ----------------------------------------------------------------------------------------------
# ResNet shortcuts
# ----------------------------------------------------------------------------------------------


def _silence_branch(bn: nn.BatchNorm2d) -> None:
    """Zero the last BN's scale and shift, so the residual branch adds exactly 0."""
    nn.init.zeros_(bn.weight)
    nn.init.zeros_(bn.bias)


def test_caffe_sc_downsampling_block_pools_then_appends_zero_channels():
    torch.manual_seed(0)
    model = resnet(depth=20, variant="caffe_sc")
    block = model.blocks[3]  # first block of stage 2
    assert block.conv1.stride == (2, 2) and block.conv1.in_channels == block.conv1.out_channels == 16
    _silence_branch(block.bn2)
    x = torch.randn(2, 16, 32, 32)
    out = block(x)
    assert out.shape == (2, 32, 16, 16)
    torch.testing.assert_close(out[:, :16], F.relu(F.avg_pool2d(x, 3, 2, ceil_mode=True)))
    assert (out[:, 16:] == 0).all()
    # Caffe's last 3x3 window starts at 30 and holds rows/columns 30..31 only
    assert out[1, 5, 15, 15].item() == pytest.approx(F.relu(x[1, 5, 30:, 30:].mean()).item(), abs=1e-6)
    assert model.blocks[0].conv1.stride == (1, 1) and model.conv.stride == (1, 1)  # stride-1 stem


def test_option_a_shortcut_subsamples_and_zero_pads():
    torch.manual_seed(0)
    block = resnet(depth=20).blocks[6]  # first block of stage 3: 32 -> 64 channels
    _silence_branch(block.bn2)
    x = torch.randn(2, 32, 16, 16)
    out = block(x)
    torch.testing.assert_close(out, F.relu(torch.cat([x[:, :, ::2, ::2], torch.zeros(2, 32, 8, 8)], 1)))


def test_wide_resnet_shortcuts():
    torch.manual_seed(0)
    model = WideResNet(depth=16, width=2)  # n = 2: blocks 0 (first), 2 and 4 (strided) project
    assert [block.projection is not None for block in model.blocks] == [True, False, True, False, True, False]
    assert model.blocks[0].bn0 is None and model.blocks[1].bn0 is not None
    assert model.blocks[2].projection.stride == (2, 2) and model.blocks[2].projection.bias is None
    x = torch.randn(2, 32, 32, 32)
    for block in model.blocks[1:3]:
        nn.init.zeros_(block.conv2.weight)
        nn.init.zeros_(block.conv2.bias)
    torch.testing.assert_close(model.blocks[1](x), x)
    # the projection sees the block's raw input, not the BN-ReLU'd one
    torch.testing.assert_close(model.blocks[2](x), model.blocks[2].projection(x))
    assert model.bn.eps == 1e-4 and model.bn.momentum == 0.1  # Lasagne's BatchNormLayer defaults
    assert model.fc.weight.std().item() == pytest.approx(math.sqrt(1 / 128), rel=0.1)  # HeNormal(), gain 1


# ----------------------------------------------------------------------------------------------
# Stochastic depth
# ----------------------------------------------------------------------------------------------


def test_stochastic_depth_survival_probabilities_decay_linearly():
    model = on_meta({"name": "resnet_sd"})
    blocks = list(model.blocks)
    assert len(blocks) == 54
    for depth, block in enumerate(blocks, start=1):
        assert block.death_rate == pytest.approx(depth / 54 * 0.5)
    assert blocks[-1].survival == 0.5 and blocks[0].survival == pytest.approx(1 - 0.5 / 54)


def _branch_runs(model: StochasticDepthResNet) -> list[bool]:
    ran = [False] * len(model.blocks)
    for i, block in enumerate(model.blocks):
        block.conv1.register_forward_hook(lambda m, inp, out, i=i: ran.__setitem__(i, True))
    return ran


def test_stochastic_depth_drops_branches_with_the_global_rng():
    """One draw per block per training forward, from the input's device's generator, decided as a
    tensor (no host read, nothing to recompile): a dropped block passes exactly relu(skip), keeps its
    BN statistics and gives its branch zero gradients -- which Torch's optim.sgd, moving the whole
    flattened parameter vector, still decays and moves with momentum."""
    torch.manual_seed(0)
    model = StochasticDepthResNet(depth=20)
    x = torch.randn(2, 3, 32, 32)
    torch.manual_seed(11)
    draws = [torch.rand((), dtype=torch.float64).item() for _ in model.blocks]
    next_draw = torch.rand(())
    expected = [draw >= block.death_rate for draw, block in zip(draws, model.blocks)]
    assert True in expected and False in expected  # this seed drops some blocks and keeps others

    seen = {}
    for i, block in enumerate(model.blocks):
        block.register_forward_hook(lambda m, args, out, i=i: seen.__setitem__(i, (args[0], out)))
    torch.manual_seed(11)
    first = model(x)
    assert torch.equal(torch.rand(()), next_draw)  # exactly one draw per block, from the global generator
    first.sum().backward()
    for i, block in enumerate(model.blocks):
        assert int(block.bn1.num_batches_tracked) == int(expected[i]) == int(block.bn2.num_batches_tracked)
        assert (block.conv1.weight.grad.abs().sum() > 0) == expected[i]
        if not expected[i]:
            inp, out = seen[i]
            skip = F.avg_pool2d(inp, block.stride) if block.stride > 1 else inp
            assert torch.equal(out, F.relu(F.pad(skip, (0, 0, 0, 0, 0, block.extra_channels))))
            assert torch.equal(block.bn1.running_mean, torch.zeros_like(block.bn1.running_mean))
    torch.manual_seed(11)
    torch.testing.assert_close(model(x), first)  # same seed, same blocks, same output


def test_stochastic_depth_eval_is_deterministic_and_scales_branches():
    torch.manual_seed(0)
    model = StochasticDepthResNet(depth=20).eval()
    x = torch.randn(2, 3, 32, 32)
    ran = _branch_runs(model)
    state = torch.get_rng_state()
    out = model(x)
    assert all(ran) and torch.equal(torch.get_rng_state(), state)
    torch.testing.assert_close(model(x), out)
    block, h = model.blocks[4], torch.randn(2, 32, 16, 16)
    torch.testing.assert_close(block(h), F.relu(h + block.survival * block.branch(h)))
    # the downsampling skip: 2x2 average pool, then zero channels
    down, h = model.blocks[3], torch.randn(2, 16, 32, 32)
    _silence_branch(down.bn2)
    skip = torch.cat([F.avg_pool2d(h, 2), torch.zeros(2, 16, 16, 16)], 1)
    torch.testing.assert_close(down(h), F.relu(skip))
    assert all(0 <= w <= 1 for w in model.bn.weight.tolist())  # Torch's default BN reset: uniform(0, 1)


# ----------------------------------------------------------------------------------------------
# Batch norm: momentum plumbing and Caffe's running statistics
# ----------------------------------------------------------------------------------------------


def _batch_norms(model: nn.Module) -> list[nn.BatchNorm2d]:
    return [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]


def test_bn_momentum_plumbing():
    clr_run = build_model({"name": "resnet", "depth": 20, "variant": "caffe_sc", "bn_momentum": 0.05}, 10)
    norms = _batch_norms(clr_run)
    assert len(norms) == 1 + 2 * 9
    assert all(isinstance(bn, CaffeBatchNorm2d) and bn.momentum == 0.05 and bn.affine for bn in norms)
    baseline = build_model({"name": "resnet", "depth": 20, "variant": "caffe_sc"}, 10)
    assert {bn.momentum for bn in _batch_norms(baseline)} == {0.001}  # moving_average_fraction 0.999
    sigmoid = CaffeCifar10SigmoidBN()
    described = [(type(bn), bn.momentum, bn.affine) for bn in _batch_norms(sigmoid)]
    assert described == [(CaffeBatchNorm2d, 0.001, False)] * 3
    assert {bn.momentum for bn in _batch_norms(CaffeCifar10SigmoidBN(bn_momentum=0.05))} == {0.05}
    assert {bn.momentum for bn in _batch_norms(resnet(depth=20))} == {0.1}
    assert {bn.momentum for bn in _batch_norms(resnet(depth=20, bn_momentum=0.2))} == {0.2}


def test_caffe_batch_norm_uses_caffes_running_average():
    torch.manual_seed(0)
    f = 0.95  # moving_average_fraction
    bn = CaffeBatchNorm2d(3, momentum=1 - f, affine=False).double()
    x = torch.randn(2, 3, 4, 4, dtype=torch.float64)
    torch.testing.assert_close(bn.eval()(x), x / math.sqrt(1 + bn.eps))  # no update yet: mean 0, var 1

    batches = [torch.randn(5, 3, 4, 4, dtype=torch.float64) * (i + 1) + i for i in range(3)]
    bn.train()
    for batch in batches:
        bn(batch)
    # Caffe: S_t = f S_{t-1} + x_t, Z_t = f Z_{t-1} + 1, test statistics S_t / Z_t
    weights = [f ** (len(batches) - 1 - i) for i in range(len(batches))]
    mean = sum(w * b.mean((0, 2, 3)) for w, b in zip(weights, batches)) / sum(weights)
    var = sum(w * b.var((0, 2, 3), correction=1) for w, b in zip(weights, batches)) / sum(weights)
    expected = (x - mean[:, None, None]) / (var[:, None, None] + bn.eps).sqrt()
    torch.testing.assert_close(bn.eval()(x), expected)
    # ... which PyTorch's plain running average (still 86% initial values after 3 updates) is not
    plain = F.batch_norm(x, bn.running_mean, bn.running_var, eps=bn.eps)
    assert not torch.allclose(plain, expected, atol=1e-2)


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="unknown resnet variant"):
        build_model({"name": "resnet", "variant": "option_b"}, num_classes=10)
    with pytest.raises(ValueError, match="6n \\+ 2"):
        resnet(depth=51)
    with pytest.raises(ValueError, match="6n \\+ 4"):
        WideResNet(depth=27)
    with pytest.raises(ValueError, match="DenseNet"):
        DenseNet(depth=41)
