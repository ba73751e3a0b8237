"""The command line: the Hydra app and its builders, schemas, the docs generator, summaries,
zoo training and the contrastive app. The only package that reads Hydra configs."""
