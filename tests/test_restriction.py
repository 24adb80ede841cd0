"""IRes, Eq. 5-10: attention, mask, loss; checked against per-image transcriptions."""
import pytest
import torch
import torch.nn.functional as F

from ir2net.restriction import InformationRestriction, attention_map, restriction_mask


def eq5_reference(features):
    """sum_i |A_i|^2 over channels, one channel at a time."""
    out = torch.zeros(features.shape[0], *features.shape[2:], dtype=features.dtype)
    for c in range(features.shape[1]):
        out += features[:, c].abs() ** 2
    return out


def mask_reference(attention, size, lam, strict):
    """Eq. 6-9 one image at a time, as Algorithm 1 describes it."""
    masks = []
    for image_attention in attention:
        up = F.interpolate(image_attention[None, None], size=size, mode="bilinear",
                           align_corners=True)[0]
        tau = lam * up.mean()
        masks.append(((up > tau) if strict else (up >= tau)).float())
    return torch.stack(masks)


def test_eq5_paper_attention():
    features = torch.randn(3, 7, 4, 4, dtype=torch.float64)
    torch.testing.assert_close(attention_map(features, "paper"), eq5_reference(features))


def test_authors_attention_is_row_normalised_mean_of_squares():
    features = torch.randn(2, 5, 4, 6, dtype=torch.float64)
    mean_sq = features.pow(2).mean(1)
    expected = mean_sq / mean_sq.pow(2).sum(dim=1, keepdim=True).sqrt()  # along height
    torch.testing.assert_close(attention_map(features, "authors"), expected)


@pytest.mark.parametrize("variant,strict", [("paper", False), ("authors", True)])
@pytest.mark.parametrize("lam", [0.15, 0.5, 1.0])
def test_vectorised_mask_equals_per_image_reference(variant, strict, lam):
    attention = torch.rand(6, 8, 8) ** 3
    ours = restriction_mask(attention, (32, 32), lam, variant)
    torch.testing.assert_close(ours, mask_reference(attention, (32, 32), lam, strict))


def test_lambda_zero_leaves_images_unchanged():
    features = torch.randn(4, 16, 8, 8)
    features[0] = 0.0  # an all-zero attention map: strict '>' alone would mask everything
    images = torch.randn(4, 3, 32, 32)
    for variant in ("paper", "authors"):
        restriction = InformationRestriction(lam=0.0, variant=variant)
        assert torch.equal(restriction.mask_images(images, features), images)
        assert not restriction.active


def test_lambda_one_masks_below_the_mean():
    attention = torch.rand(2, 8, 8)
    mask = restriction_mask(attention, (32, 32), 1.0, "paper")
    up = F.interpolate(attention[:, None], size=(32, 32), mode="bilinear", align_corners=True)
    expected = (up >= up.mean(dim=(2, 3), keepdim=True)).float()
    assert torch.equal(mask, expected)
    assert 0 < mask.mean() < 1


def test_masked_images_are_eq7_products():
    images = torch.randn(3, 3, 32, 32)
    features = torch.randn(3, 64, 8, 8)
    restriction = InformationRestriction(lam=0.5)
    mask = restriction_mask(attention_map(features), (32, 32), 0.5)
    torch.testing.assert_close(restriction.mask_images(images, features), images * mask)


def test_eq10_combination():
    restriction = InformationRestriction(mu=0.3)
    assert restriction.combine(torch.tensor(2.0), torch.tensor(4.0)).item() == pytest.approx(3.4)


def test_out_of_range_hyperparameters():
    with pytest.raises(ValueError, match="lambda"):
        InformationRestriction(lam=1.5)
    with pytest.raises(ValueError, match="mu"):
        InformationRestriction(mu=-0.1)


def test_rules_are_objects_looked_up_by_name_and_a_new_one_is_one_registration():
    from ir2net.config import ConfigError, load_config
    from ir2net.restriction import RestrictionRule, get_rule, list_rules, register_rule

    assert {"authors", "paper"} <= set(list_rules())
    assert get_rule("authors").keep is torch.gt and get_rule("paper").keep is torch.ge
    with pytest.raises(ValueError, match="unknown IRes variant 'nope'; expected one of"):
        get_rule("nope")
    with pytest.raises(ConfigError, match="'ires.variant': unknown restriction rule"):
        load_config("cifar10_resnet20_bireal", ["data.dataset=synthetic", "ires.variant=nope"])
    rule = register_rule(RestrictionRule("test_max_channel", lambda f: f.abs().amax(dim=1),
                                         torch.ge, "a test rule"))
    try:
        features = torch.randn(2, 4, 8, 8)
        restriction = InformationRestriction(0.5, variant="test_max_channel")
        masked = restriction.mask_images(torch.ones(2, 3, 32, 32), features)
        expected = restriction_mask(features.abs().amax(dim=1), (32, 32), 0.5, rule)
        torch.testing.assert_close(masked, expected.expand(2, 3, 32, 32))
        config = load_config("cifar10_resnet20_bireal", ["data.dataset=synthetic",
                                                         "ires.variant=test_max_channel"])
        assert config["ires"]["variant"] == "test_max_channel"
        with pytest.raises(ValueError, match="registered twice"):
            register_rule(rule)
    finally:
        from ir2net import restriction as module
        module._RULES.pop("test_max_channel")
