# bench/providers.gp: the plot of bench/providers.sh (gnuplot 5, pngcairo).
#
# Variables (gnuplot -e '...'), all set by bench/providers.sh:
#   datafile  blocks separated by two blank lines, one per panel (certificate
#             x TLS version), rows: concurrency, then nvar columns of
#             handshakes per proxy-CPU-second, nvar of p50 latency (ms),
#             nvar of "saturated in every round" (1/0); "?" = not measured
#   outfile   the PNG
#   variants  variant names, space separated (legend)
#   colors    one colour per variant, space separated
#   titles    one title per panel, space separated (no blanks inside)
#   xvalues   the concurrency levels, space separated
#   heading   the title line of the whole figure
#   subheading a second, smaller line under it
npanels = words(titles)
nvar = words(variants)

set terminal pngcairo size (npanels < 2 ? 2 : npanels) * 430, 820 font "DejaVu Sans,10" noenhanced
set output outfile
set datafile missing "?"
set datafile separator whitespace

set logscale x 2
# Explicit range (a tic on the very edge may not be drawn); xvalues ascending.
set xrange [(word(xvalues, 1) + 0) / 1.6 : (word(xvalues, words(xvalues)) + 0) * 1.6]
set xtics ()
do for [x in xvalues] { set xtics add (x x + 0) }
set grid xtics ytics lc rgb "#dddddd"
set key box opaque samplen 2 spacing 1.1 font ",9"
set border lc rgb "#444444"

set multiplot layout 2, npanels title heading . "\n" . subheading font ",11"

# Row 1: handshakes per proxy-CPU-second (filled points: proxy saturated,
# i.e. at >= 90% of its CPU quota in every round; open: not saturated).
do for [p = 1:npanels] {
    set title word(titles, p) font ",11"
    set xlabel "client connections (-c)"
    set ylabel (p == 1 ? "handshakes per proxy-CPU-second" : "")
    unset logscale y
    set yrange [0:*]
    set offsets 0, 0, graph 0.3, 0     # headroom for the legend
    set key top center horizontal maxrows 2 width -1
    set format y "%.0f"
    plot for [i = 1:nvar] datafile index (p - 1) using 1:(column(1 + i)) \
             with lines lw 2 lc rgb word(colors, i) title word(variants, i), \
         for [i = 1:nvar] datafile index (p - 1) \
             using 1:(column(1 + 2 * nvar + i) > 0 ? column(1 + i) : NaN) \
             with points pt 7 ps 1.2 lc rgb word(colors, i) notitle, \
         for [i = 1:nvar] datafile index (p - 1) \
             using 1:(column(1 + 2 * nvar + i) > 0 ? NaN : column(1 + i)) \
             with points pt 6 ps 1.2 lc rgb word(colors, i) notitle
}

# Row 2: median latency of a call (connect + full handshake + request).
do for [p = 1:npanels] {
    set title word(titles, p) . ": p50 latency" font ",11"
    set xlabel "client connections (-c)"
    set ylabel (p == 1 ? "p50 latency, ms (log)" : "")
    set logscale y 10
    set yrange [*:*]
    set offsets 0, 0, 0, 0
    set key bottom right vertical maxrows -1 width 0
    set format y "%g"
    plot for [i = 1:nvar] datafile index (p - 1) using 1:(column(1 + nvar + i)) \
             with linespoints lw 2 pt 7 ps 0.9 lc rgb word(colors, i) title word(variants, i)
}

unset multiplot
