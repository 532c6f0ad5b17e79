"""The models' side: the bridge to models/ and the model worker process, with the real-time side's handle."""
