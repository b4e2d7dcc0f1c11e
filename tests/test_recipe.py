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


def test_a_recipe_starts_from_its_base_and_replaces_what_it_names(tmp_path):
    (tmp_path / "variants").mkdir()
    (tmp_path / "default.yaml").write_text(
        "model: {decoder_depths: [3, 4]}\n"
        "data: {crop_frames: 8, source_weights: {queen: 0.5, sky: 0.5}, augment: {noise_prob: 0.5}}\n"
        "train: {lr: 2.0e-4, betas: [0.8, 0.99], seed: 1}\n")
    (tmp_path / "variants" / "a.yaml").write_text(
        "base: ../default.yaml\ndata: {source_weights: {sky: 0.25}}\ntrain: {seed: 2, betas: [0.9]}\n")
    (tmp_path / "variants" / "b.yaml").write_text("base: a.yaml\ntrain: {lr: 1.0e-4}\n")
    recipe = load_recipe(tmp_path / "variants" / "b.yaml")
    assert recipe.model == {"decoder_depths": [3, 4]}
    assert recipe.data.crop_frames == 8 and recipe.data.augment == Augment(noise_prob=0.5)
    assert recipe.data.source_weights == {"queen": 0.5, "sky": 0.25}  # mappings merge key by key
    assert recipe.train.betas == [0.9]  # lists are replaced whole
    assert (recipe.train.seed, recipe.train.lr) == (2, 1e-4)
    assert recipe_name(tmp_path / "variants" / "b.yaml") == "variants/b"


@pytest.mark.parametrize("files,message", [
    ({"a.yaml": "base: b.yaml\n", "b.yaml": "base: a.yaml\n"}, r"a\.yaml: its base leads back to it"),
    ({"a.yaml": "base: missing.yaml\n"}, r"missing\.yaml: cannot read it"),
    ({"a.yaml": "base: [b.yaml]\n"}, r"a\.yaml: base must be the path of a recipe file"),
    ({"a.yaml": "base: b.yaml\ntrain: {lr: 1}\n", "b.yaml": "train: {learning_rate: 1}\n"},
     r"b\.yaml: unknown recipe key 'learning_rate'"),
])
def test_a_wrong_base_is_named_with_its_file(tmp_path, files, message):
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    with pytest.raises(ValueError, match=message):
        load_recipe(tmp_path / "a.yaml")


def test_every_recipe_in_the_repository_loads():
    from pathlib import Path

    recipes = sorted((Path(__file__).parents[1] / "recipes").rglob("*.yaml"))
    assert len(recipes) > 10
    for path in recipes:
        load_recipe(path)  # bases found, no cycle, every key known
