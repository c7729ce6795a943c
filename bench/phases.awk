# Input: lines "NAME SECONDS" with "begin T" / "end T" around each run. Prints the
# median of each phase's duration (from the mark before it) in ms, in order.
# usage: awk -f <(echo "$MEDIAN_AWK") -f phases.awk FILE   (bench/lib.sh's median)
{ t = $NF; name = $0; sub(/ [^ ]+$/, "", name) }
name == "begin" { prev = t; first = t; next }
{ if (!(name in seen)) { seen[name] = 1; order[++n] = name }
  d[name] = d[name] " " (t - prev) * 1000; prev = t
  if (name == "end") total = total " " (t - first) * 1000 }
END { for (i = 1; i <= n; i++) printf "  %-36s %6.3f ms\n", order[i], median(d[order[i]]); printf "  %-36s %6.3f ms\n", "total (median of runs)", median(total) }
