// TEST STAND-IN (see main.go): push targets. Each is set up from its settings entry with the
// real proxy's requirements on the credential files (so a deploy that forgets or mangles them
// fails here as it would on a real site); instead of sending to APNs or FCM, an accepted
// notification is recorded.
package main

import (
	"crypto/ecdsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
)

type target struct {
	Type     string // the settings entry's Type: apple, apple_rn, android, android_rn, ...
	Platform string // apple or android: the metrics' platform label
	Topic    string
}

func appleTarget(s ApplePushSettings) (*target, error) {
	t := &target{Type: s.Type, Platform: "apple", Topic: s.ApplePushTopic}
	if s.AppleAuthKeyFile != "" && s.AppleAuthKeyID != "" && s.AppleTeamID != "" {
		if err := checkAuthKey(s.AppleAuthKeyFile); err != nil {
			return nil, fmt.Errorf("failed to initialize apple notification service with AuthKey file err=%v ", err)
		}
		return t, nil
	}
	if s.ApplePushCertPrivate != "" {
		if err := checkPemCert(s.ApplePushCertPrivate, s.ApplePushCertPassword); err != nil {
			return nil, fmt.Errorf("failed to initialize apple notification service with pem cert err=%v for type=%v", err, s.Type)
		}
		return t, nil
	}
	return nil, fmt.Errorf("apple push notifications not configured: missing ApplePushCertPrivate for type=%v", s.Type)
}

// checkAuthKey: an APNs token key (.p8) is a PEM PKCS#8 ECDSA private key.
func checkAuthKey(path string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	block, _ := pem.Decode(data)
	if block == nil {
		return errors.New("AuthKey must be a valid .p8 PEM file")
	}
	key, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return err
	}
	if _, ok := key.(*ecdsa.PrivateKey); !ok {
		return errors.New("AuthKey must be of type ecdsa.PrivateKey")
	}
	return nil
}

// checkPemCert: a PEM file holding the APNs certificate and its private key, the key
// optionally encrypted with the configured password.
func checkPemCert(path, password string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	var certPEM, keyPEM []byte
	for {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			break
		}
		switch {
		case block.Type == "CERTIFICATE":
			certPEM = append(certPEM, pem.EncodeToMemory(block)...)
		case x509.IsEncryptedPEMBlock(block): //nolint:staticcheck // legacy encrypted PEM is what APNs .pem exports use
			der, err := x509.DecryptPEMBlock(block, []byte(password)) //nolint:staticcheck
			if err != nil {
				return err
			}
			keyPEM = pem.EncodeToMemory(&pem.Block{Type: block.Type, Bytes: der})
		default:
			keyPEM = pem.EncodeToMemory(block)
		}
	}
	if certPEM == nil {
		return errors.New("found no certificate")
	}
	if keyPEM == nil {
		return errors.New("found no private key")
	}
	_, err = tls.X509KeyPair(certPEM, keyPEM)
	return err
}

func androidTarget(s AndroidPushSettings) (*target, error) {
	if s.ServiceFileLocation == "" {
		return nil, errors.New("android push notifications not configured: missing ServiceFileLocation")
	}
	data, err := os.ReadFile(s.ServiceFileLocation)
	if err != nil {
		return nil, fmt.Errorf("error reading service file: %v", err)
	}
	var account struct {
		Type        string `json:"type"`
		ProjectID   string `json:"project_id"`
		ClientEmail string `json:"client_email"`
		PrivateKey  string `json:"private_key"`
	}
	if err := json.Unmarshal(data, &account); err != nil {
		return nil, fmt.Errorf("error getting JWT config: %v", err)
	}
	if account.Type != "service_account" {
		return nil, fmt.Errorf("error getting JWT config: 'type' field is %q (expected \"service_account\")", account.Type)
	}
	if account.ProjectID == "" || account.ClientEmail == "" || account.PrivateKey == "" {
		return nil, errors.New("error initializing app: the service file needs project_id, client_email and private_key")
	}
	return &target{Type: s.Type, Platform: "android"}, nil
}
