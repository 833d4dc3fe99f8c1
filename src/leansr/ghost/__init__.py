"""GhostSR conversion of pretrained zoo models (`convert`) and its distillation fine-tune (`finetune`)."""
