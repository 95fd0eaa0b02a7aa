import pytest
import torch

from speedrun.models.resnet9 import ResNet9, ResNet9Config, count_parameters


def test_output_shape_is_batch_by_classes():
    model = ResNet9().eval()
    assert model(torch.randn(3, 3, 32, 32)).shape == (3, 10)


def test_parameter_count_matches_page_resnet9():
    # Convs 3*64*9 + 64*128*9 + 2*128*128*9 + 128*256*9 + 256*512*9 + 2*512*512*9, linear 512*10,
    # and BN weight+bias for 64+128+2*128+256+512+2*512 channels.
    convs = 9 * (3 * 64 + 64 * 128 + 2 * 128 * 128 + 128 * 256 + 256 * 512 + 2 * 512 * 512)
    bn = 2 * (64 + 128 + 2 * 128 + 256 + 512 + 2 * 512)
    assert count_parameters(ResNet9()) == convs + bn + 512 * 10 == 6_573_120


def test_logits_are_scaled():
    torch.manual_seed(0)
    scaled = ResNet9(ResNet9Config(widths=(4, 8, 8, 8), logit_scale=0.125)).eval()
    unscaled = ResNet9(ResNet9Config(widths=(4, 8, 8, 8), logit_scale=1.0)).eval()
    unscaled.load_state_dict(scaled.state_dict())
    x = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(scaled(x), unscaled(x) * 0.125)


def test_channels_last_gives_same_result():
    model = ResNet9(ResNet9Config(widths=(4, 8, 8, 8))).eval()
    x = torch.randn(2, 3, 32, 32)
    expected = model(x)
    model = model.to(memory_format=torch.channels_last)
    torch.testing.assert_close(model(x.to(memory_format=torch.channels_last)), expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("widths", [(1, 2, 3), (0, 8, 8, 8)])
def test_bad_widths_are_rejected(widths):
    with pytest.raises(ValueError, match="widths"):
        ResNet9Config(widths=widths)
