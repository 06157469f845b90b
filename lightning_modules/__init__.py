"""LightningModules: training steps, losses, optimisers and logging around plain nn.Modules."""
