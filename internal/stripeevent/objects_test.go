package stripeevent

import (
	"encoding/json"
	"testing"
)

func TestSampleIsAFreshObjectOfItsType(t *testing.T) {
	for object := range samples {
		t.Run(object, func(t *testing.T) {
			a := Sample(object)
			if a["object"] != object {
				t.Errorf(`Sample(%q)["object"] = %v`, object, a["object"])
			}
			if _, ok := a["created"].(json.Number); !ok {
				t.Errorf("created = %T, want a json.Number", a["created"])
			}
			a["id"] = "changed"
			if b := Sample(object); b["id"] == "changed" {
				t.Error("a change to one sample shows in the next")
			}
		})
	}
}
