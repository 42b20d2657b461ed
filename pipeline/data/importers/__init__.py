"""Dataset importers: each turns a public dataset's native files into a SkeletonDataset."""
