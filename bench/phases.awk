# Input: lines "NAME SECONDS" with "begin T" / "end T" around each run. Prints the
# median of each phase's duration (from the mark before it) in ms, in order.
function median(s,   a, n, i, j, x) { n = split(s, a, " "); for (i = 2; i <= n; i++) { x = a[i]; for (j = i - 1; j > 0 && a[j] + 0 > x + 0; j--) a[j+1] = a[j]; a[j+1] = x }
  return (n % 2) ? a[(n+1)/2] : (a[n/2] + a[n/2+1]) / 2 }
{ t = $NF; name = $0; sub(/ [^ ]+$/, "", name) }
name == "begin" { prev = t; first = t; next }
{ if (!(name in seen)) { seen[name] = 1; order[++n] = name }
  d[name] = d[name] " " (t - prev) * 1000; prev = t
  if (name == "end") total = total " " (t - first) * 1000 }
END { for (i = 1; i <= n; i++) printf "  %-36s %6.3f ms\n", order[i], median(d[order[i]]); printf "  %-36s %6.3f ms\n", "total (median of runs)", median(total) }
