"""The pure core: musical time, phrase capture, note ledger, theory and the engine; no threads, ports or torch."""
