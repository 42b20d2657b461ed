"""Pose estimators: frames in, `[M, T, V, C]` keypoints and scores out (see `estimators.base`)."""
