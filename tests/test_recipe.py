"""Training recipes: typed defaults, YAML that names only what differs, unknown keys named with their file."""
import pytest
import yaml

from codec.train.recipe import Augment, Recipe, load_recipe, recipe_name


def test_a_recipe_names_only_what_differs(tmp_path):
    path = tmp_path / "speech" / "small.yaml"
    path.parent.mkdir()
    path.write_text("data: {crop_frames: 8, augment: {noise_prob: 0.5}}\ntrain: {lr: 2.0e-4, ema_decay: null}\n")
    recipe = load_recipe(path)
    assert recipe.data.crop_frames == 8 and recipe.train.lr == 2e-4 and recipe.train.steps == 20000
    assert recipe.data.augment == Augment(noise_prob=0.5)  # the other augmentation keys keep their defaults
    assert Recipe.from_dict(yaml.safe_load(yaml.safe_dump(recipe.to_dict()))) == recipe  # what a run saves
    assert recipe.replace(train={"steps": 8}).train.steps == 8 and recipe.train.steps == 20000
    assert recipe_name(path) == "speech/small"  # what a run records: never the path


@pytest.mark.parametrize("text,key", [("train: {learning_rate: 1}", "learning_rate"),
                                      ("data: {augment: {gain: 3}}", "gain"), ("optimizer: {}", "optimizer")])
def test_an_unknown_key_is_named_with_its_file(tmp_path, text, key):
    path = tmp_path / "r.yaml"
    path.write_text(text)
    with pytest.raises(ValueError, match=rf"r\.yaml: unknown recipe key '{key}'"):
        load_recipe(path)
