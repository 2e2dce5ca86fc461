"""The plain `nn.Module` (`net`) and its pretrained-backbone loading (`pretrained`); no Lightning or Hydra here."""
