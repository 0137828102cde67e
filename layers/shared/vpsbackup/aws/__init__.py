"""The AWS side every job shares: the StateTable layout, SNS notifications, warm-invocation objects."""
