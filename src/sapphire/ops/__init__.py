"""Operations: configuration, metrics, alerts and notifiers, logging and health."""
