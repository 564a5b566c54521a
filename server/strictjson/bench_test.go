package strictjson

import (
	"fmt"
	"strings"
	"testing"
)

func BenchmarkDecode(b *testing.B) {
	var manyKeys strings.Builder
	manyKeys.WriteString(`{"action":{"params":{`)
	for i := 0; manyKeys.Len() < DefaultMaxBytes-64; i++ {
		if i > 0 {
			manyKeys.WriteByte(',')
		}
		fmt.Fprintf(&manyKeys, `"k%d":"\ufffd"`, i)
	}
	manyKeys.WriteString(`}}}`)
	for _, bc := range []struct {
		name string
		body string
	}{
		{"decision request", `{"action":{"type":"payment.send","amount":{"value":"1250.00","currency":"EUR"},"params":{"po":"PO-77"}},"reason":"Pay approved invoice INV-2291"}`},
		{"64KiB of keys", manyKeys.String()},
		{"64KiB of arrays", `{"action":{"params":{"a":[` + strings.Repeat(`[[[[1]]]],`, 6500) + `1]}}}`},
	} {
		b.Run(bc.name, func(b *testing.B) {
			data := []byte(bc.body)
			b.SetBytes(int64(len(data)))
			for b.Loop() {
				var r request
				if err := Decode(data, &r, Options{}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
