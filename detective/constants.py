"""Values the data, the model and prediction share; here so that none of them imports another for a number."""

IMAGENET_MEAN = (0.485, 0.456, 0.406)  # the statistics torchvision's ImageNet backbones were trained with
IMAGENET_STD = (0.229, 0.224, 0.225)
# An image is unfamiliar when its novelty exceeds what this share of the validation images reach (train/module.py).
UNFAMILIAR_QUANTILE = 0.99
