"""llama-server processes: one process (process), the pool that keeps one running (pool), its HTTP
client (client) and its memory probe (memory)."""
