"""`nixdrift kube`: a cluster's live objects against a directory of manifests.

The same one-direction pipeline as a host: `manifests` (declared) and `live` (the real
`kubernetes` client) fill records of `model`; the pure comparators in `compare_*` turn them into
findings; `scan` runs policy and builds the Report every renderer and sink already reads.
"""
