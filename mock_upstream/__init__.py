"""mock_upstream."""
