"""The per-input results of the predictor, as predict.py prints them."""

from detective.predict.results import Failure, Prediction


def test_describe_reads_like_the_original():
    p = Prediction("cat.jpg", "cat", 0.985, [("cat", 0.985)], 0.93, True, 0.5)
    assert p.describe() == "Object: cat (98.5%)  Source: AI generated (AI probability 0.93)"
    assert Failure("x.jpg", "boom").as_dict() == {"path": "x.jpg", "error": "boom"}


def test_without_a_subject_head_the_prediction_says_so():
    p = Prediction("x.jpg", None, None, [], 0.2, False, 0.5)
    assert p.describe() == "Object: - (no subject head)  Source: real photo (AI probability 0.20)"
    assert p.as_dict()["subject"] is None and p.as_dict()["top_k"] == []


def test_an_unfamiliar_image_says_so_beside_its_probability_and_in_its_record():
    p = Prediction("x.jpg", None, None, [], 0.97, True, 0.5, novelty=41.5, unfamiliar=True)
    assert p.describe() == "Object: - (no subject head)  Source: AI generated (AI probability 0.97, unfamiliar)"
    assert p.as_dict()["unfamiliar"] is True and p.as_dict()["novelty"] == 41.5
    cannot_tell = Prediction("x.jpg", None, None, [], 0.97, True, 0.5)  # an old checkpoint, or an ONNX model
    assert "unfamiliar" not in cannot_tell.describe() and cannot_tell.as_dict()["unfamiliar"] is None
