"""Bridges to other code: ``transformers`` models (``fope.integrations.transformers``) and FoPE checkpoints written by
the authors' OLMo fork and the Intern stack (``fope.integrations.checkpoints``). Import the submodule you need."""
