"""The embedded synthetic scene generator (tools, benchmarks and tests): content, rendering, keypoints."""
