import java.io.BufferedReader;
import java.io.BufferedWriter;
import java.lang.reflect.Field;
import java.lang.reflect.Method;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.Map;

/**
 * Impact search over a local Anserini index with integer query weights, one JVM for a whole batch of queries.
 * Calls io.anserini.search.SimpleImpactSearcher, which touches no network.
 *
 * Anserini is reached by reflection so that this file compiles with any javac (release 11) and no classpath.
 *
 * Usage: LexlipAnseriniSearch INDEX_DIR K QUERIES_TSV OUT_TSV
 * A query line is "QID<TAB>TOKEN WEIGHT TOKEN WEIGHT ..." (tokens escaped, so free of whitespace);
 * each hit becomes a line "QID<TAB>DOCID<TAB>SCORE", best first. OUT_TSV.times gets "QID<TAB>NANOSECONDS" per
 * query: the time of the search call alone, without JVM start or index opening.
 */
public final class LexlipAnseriniSearch {
    private LexlipAnseriniSearch() {
    }

    public static void main(final String[] args) throws Exception {
        if (args.length != 4) {
            System.err.println("usage: LexlipAnseriniSearch INDEX_DIR K QUERIES_TSV OUT_TSV");
            System.exit(2);
        }
        final int k = Integer.parseInt(args[1]);
        final Class<?> searcherClass = Class.forName("io.anserini.search.SimpleImpactSearcher");
        final Object searcher = searcherClass.getConstructor(String.class).newInstance(args[0]);
        final Method search = searcherClass.getMethod("search", Map.class, int.class);
        final Class<?> scoredDoc = Class.forName("io.anserini.search.ScoredDoc");
        final Field docid = scoredDoc.getField("docid");
        final Field score = scoredDoc.getField("score");
        try (BufferedReader in = Files.newBufferedReader(Path.of(args[2]), StandardCharsets.UTF_8);
                BufferedWriter out = Files.newBufferedWriter(Path.of(args[3]), StandardCharsets.UTF_8);
                BufferedWriter times = Files.newBufferedWriter(Path.of(args[3] + ".times"), StandardCharsets.UTF_8)) {
            String line;
            while ((line = in.readLine()) != null) {
                if (line.isBlank()) {
                    continue;
                }
                final String[] parts = line.split("\t", 2);
                final String[] terms = parts.length > 1 ? parts[1].trim().split(" ") : new String[0];
                final Map<String, Integer> weights = new LinkedHashMap<>();
                for (int i = 0; i + 1 < terms.length; i += 2) {
                    weights.put(terms[i], Integer.parseInt(terms[i + 1]));
                }
                final long started = System.nanoTime();
                final Object[] hits = (Object[]) search.invoke(searcher, weights, k);
                times.write(parts[0] + "\t" + (System.nanoTime() - started));
                times.newLine();
                for (final Object hit : hits) {
                    out.write(parts[0] + "\t" + docid.get(hit) + "\t" + score.getFloat(hit));
                    out.newLine();
                }
            }
        } finally {
            searcherClass.getMethod("close").invoke(searcher);
        }
    }
}
