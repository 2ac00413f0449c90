"""The inference layer every model stage shares: options and `Generate` (`core`), the Beam
`ModelHandler` (`prompt_handler`, the only module that imports Beam's torch-loading ml package),
the backends (`backend_transformers`, `backend_vllm`) and chat prompts (`chat_prompt`)."""
