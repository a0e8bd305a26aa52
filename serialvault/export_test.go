package serialvault

import "time"

// SignContentForTest signs arbitrary content bytes and decodes the result,
// to build assertions our encoder would not write.
func SignContentForTest(content []byte, key *PrivateKey) (*Assertion, error) {
	sig, err := signContent(content, key, time.Now())
	if err != nil {
		return nil, err
	}
	enc := append(append([]byte(nil), content...), "\n\n"...)
	enc = append(enc, wrap76(base64Std(sig))...)
	return Decode(append(enc, '\n'))
}
