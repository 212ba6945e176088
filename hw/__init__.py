"""gateskip.hw"""
