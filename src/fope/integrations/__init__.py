"""Bridges to other code: ``transformers`` models (``fope.integrations.transformers``) and FoPE checkpoints written by
the authors' OLMo fork and the Intern stack (``fope.integrations.checkpoints``, gathering ``olmo_fork``, ``intern`` and
``weights``). Import the submodule you need."""
