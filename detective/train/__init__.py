"""Training: the LightningModule, the metrics it logs, and the Hydra-driven run."""
