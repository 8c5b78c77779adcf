# The provider page's own example, verbatim (../shared/api/sd3_5-v1.txt); tests swap only its URL.
import requests
import json

url = "https://api.imagepipeline.io/sd3_5/v1"
headers = {
"API-Key": "Your API Key",
"Content-Type": "application/json"
}
data = {
"prompt": "beautiful waterfall in the rainforest, anime style",
"negative_prompt": "error, cropped, worst quality, low quality, duplicate, bad proportions, incomplete subject",
"num_inference_steps": 4,
"samples": 1,
"guidance_scale":0.0,
"width": 1024,
"height": 1024
}
response = requests.post(url, headers=headers, data=json.dumps(data))
print(response.json())
