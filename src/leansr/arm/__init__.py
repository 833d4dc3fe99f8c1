"""ARM routing: per-patch choice of a supernet width (or bicubic) from an edge score and a quality table.

`edge`: the edge score; `table`: edge -> quality tables (official LUT files, our calibrated ones);
`costs`: per-route MACs; `official`: the authors' protocol, reproduced exactly; `budget`: our routing.
"""
