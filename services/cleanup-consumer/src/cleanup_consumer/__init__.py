"""cleanup-consumer: releases seat holds and expires queue tokens after a payment."""
