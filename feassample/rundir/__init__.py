"""Run directories: storage, fingerprint, lock, resume checks, merge of shards."""
