"""`livelambda aws up / down / status`: attach deployed Lambda functions to live mode and put them back."""
