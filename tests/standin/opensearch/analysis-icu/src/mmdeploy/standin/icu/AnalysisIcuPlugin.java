/*
 * TEST STAND-IN for OpenSearch's analysis-icu plugin, written by the mmdeploy project.
 *
 * Mattermost's posts and files index templates analyse text with icu_tokenizer and
 * icu_normalizer, which OpenSearch only has with the analysis-icu plugin. Real sites install
 * that plugin with `bin/opensearch-plugin install` from its release zip; the zip is not
 * downloadable on the test machines, so this plugin, packaged the same way under the same
 * name, gives the test bed the same analysis components on top of Lucene's own ICU module
 * (org.apache.lucene:lucene-analysis-icu, from Maven Central):
 *   tokenizer    icu_tokenizer   (Lucene ICUTokenizer, the default configuration)
 *   token filter icu_normalizer  (name: nfc|nfkc|nfkc_cf, default nfkc_cf; mode: compose|decompose;
 *                                 unicode_set_filter), usable in normalizers
 *   token filter icu_folding     (Lucene ICUFoldingFilter, unicode_set_filter), usable in normalizers
 *   char filter  icu_normalizer  (same settings), usable in normalizers
 */
package mmdeploy.standin.icu;

import java.io.Reader;
import java.util.Map;

import com.ibm.icu.text.FilteredNormalizer2;
import com.ibm.icu.text.Normalizer2;
import com.ibm.icu.text.UnicodeSet;
import org.apache.lucene.analysis.TokenStream;
import org.apache.lucene.analysis.Tokenizer;
import org.apache.lucene.analysis.icu.ICUFoldingFilter;
import org.apache.lucene.analysis.icu.ICUNormalizer2CharFilter;
import org.apache.lucene.analysis.icu.ICUNormalizer2Filter;
import org.apache.lucene.analysis.icu.segmentation.ICUTokenizer;
import org.opensearch.common.settings.Settings;
import org.opensearch.index.IndexSettings;
import org.opensearch.index.analysis.AbstractCharFilterFactory;
import org.opensearch.index.analysis.AbstractTokenFilterFactory;
import org.opensearch.index.analysis.AbstractTokenizerFactory;
import org.opensearch.index.analysis.CharFilterFactory;
import org.opensearch.index.analysis.NormalizingCharFilterFactory;
import org.opensearch.index.analysis.NormalizingTokenFilterFactory;
import org.opensearch.index.analysis.TokenFilterFactory;
import org.opensearch.index.analysis.TokenizerFactory;
import org.opensearch.indices.analysis.AnalysisModule.AnalysisProvider;
import org.opensearch.plugins.AnalysisPlugin;
import org.opensearch.plugins.Plugin;

public class AnalysisIcuPlugin extends Plugin implements AnalysisPlugin {

    @Override
    public Map<String, AnalysisProvider<TokenizerFactory>> getTokenizers() {
        return Map.of("icu_tokenizer", (indexSettings, env, name, settings) -> new AbstractTokenizerFactory(indexSettings, settings, name) {
            @Override
            public Tokenizer create() {
                return new ICUTokenizer();
            }
        });
    }

    @Override
    public Map<String, AnalysisProvider<TokenFilterFactory>> getTokenFilters() {
        return Map.of(
            "icu_normalizer", NormalizerFilter::new,
            "icu_folding", FoldingFilter::new
        );
    }

    @Override
    public Map<String, AnalysisProvider<CharFilterFactory>> getCharFilters() {
        return Map.of("icu_normalizer", NormalizerCharFilter::new);
    }

    /** The settings' normalization form, optionally limited to a unicode_set_filter. */
    static Normalizer2 normalizer(Settings settings) {
        String form = settings.get("name", "nfkc_cf");
        Normalizer2.Mode mode = "decompose".equals(settings.get("mode", "compose")) ? Normalizer2.Mode.DECOMPOSE : Normalizer2.Mode.COMPOSE;
        if (!form.equals("nfc") && !form.equals("nfkc") && !form.equals("nfkc_cf")) {
            throw new IllegalArgumentException("icu_normalizer: unknown name [" + form + "], expected nfc, nfkc or nfkc_cf");
        }
        return limited(Normalizer2.getInstance(null, form, mode), settings);
    }

    static Normalizer2 limited(Normalizer2 base, Settings settings) {
        String set = settings.get("unicode_set_filter");
        if (set == null) {
            return base;
        }
        UnicodeSet unicodeSet = new UnicodeSet(set);
        unicodeSet.freeze();
        return new FilteredNormalizer2(base, unicodeSet);
    }

    static final class NormalizerFilter extends AbstractTokenFilterFactory implements NormalizingTokenFilterFactory {
        private final Normalizer2 normalizer;

        NormalizerFilter(IndexSettings indexSettings, org.opensearch.env.Environment env, String name, Settings settings) {
            super(indexSettings, name, settings);
            this.normalizer = normalizer(settings);
        }

        @Override
        public TokenStream create(TokenStream tokenStream) {
            return new ICUNormalizer2Filter(tokenStream, normalizer);
        }
    }

    static final class FoldingFilter extends AbstractTokenFilterFactory implements NormalizingTokenFilterFactory {
        private final Normalizer2 normalizer;

        FoldingFilter(IndexSettings indexSettings, org.opensearch.env.Environment env, String name, Settings settings) {
            super(indexSettings, name, settings);
            this.normalizer = limited(ICUFoldingFilter.NORMALIZER, settings);
        }

        @Override
        public TokenStream create(TokenStream tokenStream) {
            return new ICUNormalizer2Filter(tokenStream, normalizer);
        }
    }

    static final class NormalizerCharFilter extends AbstractCharFilterFactory implements NormalizingCharFilterFactory {
        private final Normalizer2 normalizer;

        NormalizerCharFilter(IndexSettings indexSettings, org.opensearch.env.Environment env, String name, Settings settings) {
            super(indexSettings, name);
            this.normalizer = normalizer(settings);
        }

        @Override
        public Reader create(Reader reader) {
            return new ICUNormalizer2CharFilter(reader, normalizer);
        }
    }
}
