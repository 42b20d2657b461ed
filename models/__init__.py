"""`models`: skeleton layouts and graphs, GCN backbones, heads, distillation losses, gradient revision, training."""
