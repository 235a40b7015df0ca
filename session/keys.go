package session

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"

	"github.com/lestrrat-go/jwx/v3/jwa"
)

// minHMACSecret is the shortest HMAC secret accepted: RFC 7518 §3.2 requires
// a key at least as long as the hash output, and HS256 is the weakest.
const minHMACSecret = 32

// minRSABits is the smallest RSA modulus accepted (RFC 7518 §3.3).
const minRSABits = 2048

// verifyKey is a key together with the only algorithms it may verify. Tying
// the algorithm to the key type, rather than trusting the token's header,
// is what rules out "none" and HS256-signed-with-the-public-key confusion.
type verifyKey struct {
	key  any // *rsa.PublicKey, *ecdsa.PublicKey, ed25519.PublicKey or []byte
	algs []jwa.SignatureAlgorithm
}

// alg returns the algorithm named by a token header if this key may verify
// it.
func (k *verifyKey) alg(name string) (jwa.SignatureAlgorithm, bool) {
	for _, a := range k.algs {
		if a.String() == name {
			return a, true
		}
	}
	return jwa.SignatureAlgorithm{}, false
}

// newVerifyKey pairs key with the algorithms its type allows. If only is not
// empty (a JWK's "alg"), it narrows the set to that one algorithm, which
// must still fit the key type.
func newVerifyKey(key any, only string) (*verifyKey, error) {
	var algs []jwa.SignatureAlgorithm
	switch k := key.(type) {
	case []byte:
		if len(k) < minHMACSecret {
			return nil, fmt.Errorf("hmac secret is %d bytes, need at least %d", len(k), minHMACSecret)
		}
		algs = []jwa.SignatureAlgorithm{jwa.HS256(), jwa.HS384(), jwa.HS512()}
	case *rsa.PublicKey:
		if k.N.BitLen() < minRSABits {
			return nil, fmt.Errorf("rsa key is %d bits, need at least %d", k.N.BitLen(), minRSABits)
		}
		algs = []jwa.SignatureAlgorithm{jwa.RS256(), jwa.RS384(), jwa.RS512(), jwa.PS256(), jwa.PS384(), jwa.PS512()}
	case *ecdsa.PublicKey:
		switch k.Curve {
		case elliptic.P256():
			algs = []jwa.SignatureAlgorithm{jwa.ES256()}
		case elliptic.P384():
			algs = []jwa.SignatureAlgorithm{jwa.ES384()}
		case elliptic.P521():
			algs = []jwa.SignatureAlgorithm{jwa.ES512()}
		default:
			return nil, errors.New("unsupported ecdsa curve")
		}
	case ed25519.PublicKey:
		algs = []jwa.SignatureAlgorithm{jwa.EdDSA(), jwa.EdDSAEd25519()}
	default:
		return nil, fmt.Errorf("unsupported key type %T", key)
	}
	vk := &verifyKey{key: key, algs: algs}
	if only != "" {
		a, ok := vk.alg(only)
		if !ok {
			return nil, fmt.Errorf("algorithm %q does not fit key type %T", only, key)
		}
		vk.algs = []jwa.SignatureAlgorithm{a}
	}
	return vk, nil
}

// parsePublicKeyPEM reads the first PEM block of data: a PKIX public key
// ("PUBLIC KEY"), a PKCS #1 RSA public key or a certificate. Private keys are
// refused so that a secret never ends up configured where a public key is
// expected.
func parsePublicKeyPEM(data []byte) (any, error) {
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, errors.New("no PEM block found")
	}
	switch block.Type {
	case "PUBLIC KEY":
		return x509.ParsePKIXPublicKey(block.Bytes)
	case "RSA PUBLIC KEY":
		return x509.ParsePKCS1PublicKey(block.Bytes)
	case "CERTIFICATE":
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, err
		}
		return cert.PublicKey, nil
	case "PRIVATE KEY", "RSA PRIVATE KEY", "EC PRIVATE KEY":
		return nil, errors.New("PEM holds a private key; give the public key")
	default:
		return nil, fmt.Errorf("unsupported PEM block %q", block.Type)
	}
}
