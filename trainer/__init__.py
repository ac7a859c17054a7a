"""storytui's trainer: data sources, tokenised shards, and the pretrain/finetune loop."""
