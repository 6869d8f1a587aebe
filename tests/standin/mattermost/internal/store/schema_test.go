package store

import "testing"

func TestSchemaNumbersOrderReleasesAndSharePatches(t *testing.T) {
	cases := map[string]int64{"10.11.4": 10011, "10.11.5": 10011, "11.1.0": 11001, "11.0.2": 11000, "9.11.0-rc1": 9011}
	for v, want := range cases {
		if got := SchemaOf(v); got != want {
			t.Errorf("SchemaOf(%s) = %d, want %d", v, got, want)
		}
	}
	if !(SchemaOf("10.11.4") < SchemaOf("11.0.0") && SchemaOf("11.0.0") < SchemaOf("11.1.0")) {
		t.Fatal("schema numbers do not follow release order")
	}
	if SchemaVersionString("11.1.3") != "11.1.0" {
		t.Fatal(SchemaVersionString("11.1.3"))
	}
}
