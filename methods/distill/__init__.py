"""Every module here registers itself when discovered (bench.discovery); adding a file is all it takes."""
