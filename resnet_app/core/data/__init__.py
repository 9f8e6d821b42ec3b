"""Images on disk -> checked samples: the safe loader, folder scan and report, splits, the decoded cache, batches.
Imports nothing from the other engine packages (model, train, use); only core.errors and core.files beside it.
"""
