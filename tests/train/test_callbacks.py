import pytest

from detective.train import callbacks
from detective.train.callbacks import TrimFreedMemory
from detective.train.config import compose_config


def test_freed_memory_is_trimmed_every_n_training_steps_and_after_each_validation(monkeypatch):
    trims = []
    monkeypatch.setattr(callbacks, "trim_freed_memory", lambda: trims.append(True) or True)
    trim = TrimFreedMemory(every_n_steps=3)
    for batch_idx in range(7):
        trim.on_train_batch_end(None, None, None, None, batch_idx)
    assert len(trims) == 2  # after steps 3 and 6
    trim.on_validation_end(None, None)
    assert len(trims) == 3
    with pytest.raises(ValueError, match="every_n_steps must be at least 1, got 0"):
        TrimFreedMemory(every_n_steps=0)


@pytest.mark.parametrize("overrides", [[], ["callbacks=best"], ["experiment=finetune"]])
def test_every_recipe_trims_freed_memory(overrides):
    assert compose_config(overrides).callbacks.trim_memory._target_ == "detective.train.callbacks.TrimFreedMemory"
