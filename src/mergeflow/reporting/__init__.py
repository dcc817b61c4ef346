"""Report rendering: Markdown tables and PNG figures from the results table and analyses."""
