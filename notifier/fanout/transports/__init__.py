"""How a notice leaves the process: native HTTP and Discord sends, and Apprise for the long tail."""
