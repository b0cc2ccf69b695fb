import java.io.BufferedReader;
import java.io.BufferedWriter;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Iterator;
import java.util.LinkedHashMap;
import java.util.Map;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;

import io.anserini.search.ScoredDoc;
import io.anserini.search.SimpleImpactSearcher;

/**
 * Impact search over a local Anserini index with integer query weights, one JVM for a whole batch of queries.
 *
 * Usage: LexlipAnseriniSearch INDEX_DIR K QUERIES_JSONL OUT_JSONL
 * Each query line is {"id": "...", "vector": {"token": weight, ...}}; each output line is
 * {"id": "...", "hits": [["docid", score], ...]}. Nothing here touches the network.
 */
public final class LexlipAnseriniSearch {
    private LexlipAnseriniSearch() {
    }

    public static void main(final String[] args) throws Exception {
        if (args.length != 4) {
            System.err.println("usage: LexlipAnseriniSearch INDEX_DIR K QUERIES_JSONL OUT_JSONL");
            System.exit(2);
        }
        final int k = Integer.parseInt(args[1]);
        final ObjectMapper mapper = new ObjectMapper();
        try (SimpleImpactSearcher searcher = new SimpleImpactSearcher(args[0]);
                BufferedReader in = Files.newBufferedReader(Path.of(args[2]), StandardCharsets.UTF_8);
                BufferedWriter out = Files.newBufferedWriter(Path.of(args[3]), StandardCharsets.UTF_8)) {
            String line;
            while ((line = in.readLine()) != null) {
                if (line.isBlank()) {
                    continue;
                }
                final JsonNode query = mapper.readTree(line);
                final Map<String, Integer> weights = new LinkedHashMap<>();
                final Iterator<Map.Entry<String, JsonNode>> it = query.get("vector").fields();
                while (it.hasNext()) {
                    final Map.Entry<String, JsonNode> e = it.next();
                    weights.put(e.getKey(), e.getValue().intValue());
                }
                final ScoredDoc[] hits = searcher.search(weights, k);
                final ObjectNode result = mapper.createObjectNode();
                result.set("id", query.get("id"));
                final ArrayNode list = result.putArray("hits");
                for (final ScoredDoc hit : hits) {
                    list.addArray().add(hit.docid).add(hit.score);
                }
                out.write(mapper.writeValueAsString(result));
                out.newLine();
            }
        }
    }
}
