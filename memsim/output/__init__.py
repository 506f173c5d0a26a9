"""What people see: terminal text and tables, plotly figures, the HTML report and graph exports."""
