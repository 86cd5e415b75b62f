"""The shadow proxy: a mitmproxy addon that mirrors production traffic to the candidate."""
