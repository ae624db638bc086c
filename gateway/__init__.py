"""The LiteLLM gateway: settings, rendered files and pyinfra operations shared by deploy, checks and tasks."""
